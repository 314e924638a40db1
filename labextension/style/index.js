import './base.css';
import './endpoints.css';
